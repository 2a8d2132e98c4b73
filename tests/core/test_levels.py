"""H.264 Table A-1 and H.265 Table A.8 limits: which picture sizes and rates fit a level."""

from __future__ import annotations

import pytest

from vid2dcm.core import levels
from vid2dcm.core.levels import h264_fits, h264_level, hevc_fits_51, hevc_level_name

L41 = h264_level(41)
L42 = h264_level(42)


def test_level_table_values_used_by_dicom() -> None:
    assert (L41.max_macroblocks_per_s, L41.max_frame_macroblocks) == (245_760, 8_192)
    assert (L42.max_macroblocks_per_s, L42.max_frame_macroblocks) == (522_240, 8_704)
    assert L41.name == "4.1"
    assert L42.name == "4.2"
    assert h264_level(30).name == "3.0"


def test_level_table_is_ordered_and_monotonic() -> None:
    idcs = [lv.level_idc for lv in levels.H264_LEVELS]
    assert idcs == sorted(idcs)
    for a, b in zip(levels.H264_LEVELS, levels.H264_LEVELS[1:], strict=False):
        assert a.max_macroblocks_per_s <= b.max_macroblocks_per_s
        assert a.max_frame_macroblocks <= b.max_frame_macroblocks


def test_h264_level_lookup() -> None:
    assert h264_level(9) is levels.H264_LEVELS[0]  # level 1b
    with pytest.raises(KeyError):
        h264_level(43)


@pytest.mark.parametrize(("level_idc", "width", "height", "rate", "fits"), [
    # 1080p: 120 x 68 = 8160 macroblocks per frame
    (41, 1920, 1080, 30.0, True),           # 244,800 MB/s
    (41, 1920, 1080, 30000 / 1001, True),
    (41, 1920, 1080, 25.0, True),
    (41, 1920, 1080, 50.0, False),
    (41, 1920, 1080, 60.0, False),
    (41, 1920, 1080, 30.2, False),          # 246,432 MB/s, just over
    (42, 1920, 1080, 60.0, True),           # 489,600 MB/s
    (42, 1920, 1080, 60000 / 1001, True),
    (42, 1920, 1080, 64.0, True),           # 522,240 exactly
    (42, 1920, 1080, 65.0, False),
    (40, 1920, 1080, 30.0, True),
    (31, 1920, 1080, 30.0, False),          # 3600 MB per frame at Level 3.1
    (31, 1280, 720, 30.0, True),            # 3600 MB per frame, 108,000 MB/s
    (31, 1280, 720, 31.0, False),
    (41, 1280, 720, 68.0, True),
    (41, 1280, 720, 69.0, False),
    (30, 720, 576, 25.0, True),             # 1620 MB per frame, 40,500 MB/s
    (30, 720, 576, 26.0, False),
    (41, 1024, 768, 80.0, True),            # XGA up to about 80 Hz (PS3.5 note)
    (41, 1024, 768, 81.0, False),
    # 2048x1080 is 128 x 68 = 8704 macroblocks: one frame is over Level 4.1 whatever the rate
    (41, 2048, 1080, 30.0, False),
    (41, 2048, 1080, 1.0, False),
    (42, 2048, 1080, 30.0, True),
    (42, 2048, 1088, 30.0, True),           # same macroblock count as 1080
    (42, 2048, 1090, 30.0, False),
    # width and height limits: sqrt(8 * MaxFS) macroblocks
    (41, 4096, 32, 25.0, True),             # 256 MB wide
    (41, 4112, 32, 25.0, False),            # 257 MB wide, only 514 MB per frame
    (41, 32, 4112, 25.0, False),
    (42, 4208, 16, 25.0, True),             # 263 MB wide
    (42, 4224, 16, 25.0, False),            # 264
])
def test_h264_fits(level_idc: int, width: int, height: int, rate: float, fits: bool) -> None:
    result = h264_fits(h264_level(level_idc), width, height, rate)
    if fits:
        assert result is None
    else:
        assert isinstance(result, str) and result
        assert f"{width}x{height}" in result
        assert h264_level(level_idc).name in result


def test_h264_reasons_name_the_limit() -> None:
    per_frame = h264_fits(L41, 2048, 1080, 30.0)
    assert per_frame is not None
    assert "8704 macroblocks per frame" in per_frame
    assert "8192" in per_frame
    per_second = h264_fits(L41, 1920, 1080, 60.0)
    assert per_second is not None
    assert "macroblocks/s" in per_second
    assert "489600" in per_second and "245760" in per_second
    side = h264_fits(L41, 4112, 32, 25.0)
    assert side is not None and "wider or taller" in side


def test_partial_macroblocks_count_as_whole_ones() -> None:
    # 1921 pixels need 121 macroblocks: 121 * 68 = 8228 > 8192
    assert h264_fits(L41, 1920, 1080, 1.0) is None
    assert h264_fits(L41, 1921, 1080, 1.0) is not None


@pytest.mark.parametrize(("width", "height", "rate", "fits"), [
    (3840, 2160, 60.0, True),
    (4096, 2160, 60.0, True),               # 530,841,600 samples/s
    (4096, 2160, 60000 / 1001, True),
    (4096, 2160, 61.0, False),
    (4096, 2160, 120.0, False),
    (3840, 2160, 64.0, True),               # 530,841,600 samples/s
    (3840, 2160, 65.0, False),
    (1920, 1080, 240.0, True),
    (1920, 1080, 300.0, False),
    (4096, 2176, 60.0, True),               # 8,912,896 samples: the whole picture limit
    (4096, 2177, 1.0, False),
    (8192, 4320, 30.0, False),
    (7680, 4320, 24.0, False),
    (8444, 1000, 1.0, True),                # sqrt(8 * MaxLumaPs) = 8444
    (8445, 1000, 1.0, False),
    (1000, 8445, 1.0, False),
])
def test_hevc_fits_51(width: int, height: int, rate: float, fits: bool) -> None:
    result = hevc_fits_51(width, height, rate)
    if fits:
        assert result is None
    else:
        assert isinstance(result, str) and f"{width}x{height}" in result
        assert "5.1" in result


def test_hevc_reasons_tell_size_from_rate() -> None:
    size = hevc_fits_51(8192, 4320, 30.0)
    rate = hevc_fits_51(4096, 2160, 120.0)
    assert size is not None and "larger" in size
    assert rate is not None and "sample rate" in rate


@pytest.mark.parametrize(("idc", "name"), [(153, "5.1"), (150, "5"), (123, "4.1"),
                                            (93, "3.1"), (180, "6"), (186, "6.2")])
def test_hevc_level_name(idc: int, name: str) -> None:
    assert hevc_level_name(idc) == name
    assert levels.HEVC_L51_LEVEL_IDC == 153
