"""The filter grammar's time range, camera equality and geo filter: SQL with bound values only, and a
sentence for every refusal."""
from __future__ import annotations

import pytest

from services.photostore.errors import InvalidFilter
from services.photostore.filters import filter_sql, parse_filters


def test_a_taken_at_range_binds_utc_times():
    where, params = filter_sql({"taken_at": {"gte": "2023-01-01", "lt": "2024-01-01T02:00:00+02:00"}})
    assert where == ["taken_at >= toDateTime({f0:String}, 'UTC')", "taken_at < toDateTime({f1:String}, 'UTC')"]
    assert params == {"f0": "2023-01-01 00:00:00", "f1": "2024-01-01 00:00:00"}


def test_camera_fields_are_text_equality():
    where, params = filter_sql({"exif_camera_make": "Canon", "exif_camera_model": ["EOS R5", "EOS R6"]})
    assert where == ["exif_camera_make = {f0:String}", "exif_camera_model IN {f1:Array(String)}"]
    assert params == {"f0": "Canon", "f1": ["EOS R5", "EOS R6"]}


def test_near_is_a_bound_great_circle_distance_in_metres():
    where, params = filter_sql({"near": {"lat": 48.85, "lon": 2.35, "km": 25}, "photo_location_country": "France"})
    assert where[0] == ("greatCircleDistance(photo_location_longitude, photo_location_latitude, "
                        "{f0_lon:Float64}, {f0_lat:Float64}) <= {f0_m:Float64}")
    assert params["f0_lat"] == 48.85 and params["f0_lon"] == 2.35 and params["f0_m"] == 25_000.0
    assert where[1] == "photo_location_country = {f3:String}" and params["f3"] == "France"


@pytest.mark.parametrize("filters, words", [
    ({"taken_at": {"gte": "last tuesday"}}, "not a date and time"),
    ({"taken_at": {"gte": 2023}}, "ISO 8601 date"),
    ({"taken_at": {"contains": "2023"}}, "range of times"),
    ({"taken_at": {"gte": "1900-01-01"}}, "outside the years 1970 to 2105"),
    ({"near": {"lat": 48.85, "lon": 2.35}}, "takes lat, lon and km"),
    ({"near": "Paris"}, "takes lat, lon and km"),
    ({"near": {"lat": 91, "lon": 2.35, "km": 5}}, "lat must be a number from -90 to 90"),
    ({"near": {"lat": 48, "lon": 2.35, "km": -1}}, "km must be a number from 0"),
    ({"near": {"lat": 48, "lon": "2", "km": 1}}, "lon must be a number"),
    ({"exif_camera_model": {"gte": 3}}, "needs text"),
])
def test_bad_filters_are_refused_with_a_sentence(filters, words):
    with pytest.raises(InvalidFilter, match=words):
        parse_filters(filters)
