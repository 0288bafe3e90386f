"""The embedder: a FastAPI service that turns texts and images into unit-length CLIP vectors."""
