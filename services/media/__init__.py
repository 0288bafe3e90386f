"""The media library: every photo a phone or camera makes, and videos, decoded from untrusted bytes.

`decode` (photos of every format, into RGB), `exif` (time, camera, GPS from the header), `raw` (camera
RAW through rawpy), `video` (frames from a video stream through PyAV), `xmp` (sidecar descriptions),
`formats` (which extensions are media, and what bytes really hold). Used by the embedder, the workers,
the gateway and the ingest command; imports no service.
"""
