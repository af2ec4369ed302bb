"""VRAM profiles and the resolution ladder: pure logic, plain values."""

from __future__ import annotations

import pytest

from trellis_box.comfyui.workflow import RESOLUTIONS, next_lower
from trellis_box.errors import ResolutionUnsupportedError
from trellis_box.gpu.profiles import (
    GIB,
    MEASURED_PEAK_BYTES,
    UNPARKED_HEADROOM,
    choose_resolution,
    lowered,
    profile_for,
)

# Total memory as the driver reports it (cudaMemGetInfo / ComfyUI's vram_total), not the label.
A10G = 23_609_475_072
L4 = 23_580_639_232
A100_40 = 42_505_273_344
L40S = 47_697_362_944
H100_80 = 85_024_112_640
H200 = 150_754_820_096  # as the H200 run's /trellis-box/info reported it
RTX_4000_ADA_20 = 21_469_593_600


@pytest.mark.parametrize("vram", [A10G, L4])
def test_24gb_cards_top_out_at_1024_with_low_vram_on(vram: int) -> None:
    profile = profile_for(vram)
    assert profile.name == "24gb-class"
    assert profile.max_resolution == "1024"
    assert profile.allowed_resolutions == ("512", "1024")
    assert profile.low_vram is True


@pytest.mark.parametrize("vram", [A100_40, L40S, H100_80])
def test_40gb_and_larger_cards_allow_1536(vram: int) -> None:
    profile = profile_for(vram)
    assert profile.max_resolution == "1536"
    assert profile.allowed_resolutions == ("512", "1024", "1536")


@pytest.mark.parametrize(("vram", "low_vram"), [(A100_40, True), (L40S, True), (H100_80, False)])
def test_only_80gb_cards_run_without_low_vram(vram: int, low_vram: bool) -> None:
    """The measured 1536 peak with headroom (39.1 GB x 1.25) is more than a 40 or 48 GB card holds."""
    assert profile_for(vram).low_vram is low_vram


def test_a_20gb_card_is_below_the_minimum() -> None:
    profile = profile_for(RTX_4000_ADA_20)
    assert profile.allowed_resolutions == ()
    assert profile.max_resolution is None


def test_a_32gb_card_stays_in_the_24gb_class() -> None:
    """1536 needs about 40 GB: 32 GB is not enough, and low_vram stays on."""
    profile = profile_for(32 * GIB)
    assert profile.max_resolution == "1024"
    assert profile.low_vram is True


def test_fallback_ladder_steps_down_to_512_then_stops() -> None:
    assert next_lower("1536") == "1024"
    assert next_lower("1024") == "512"
    assert next_lower("512") is None


def test_allowed_resolution_is_returned_unchanged() -> None:
    assert choose_resolution("1536", profile_for(L40S)) == "1536"
    assert choose_resolution("512", profile_for(A10G)) == "512"


def test_auto_downgrades_1536_to_1024_on_a_24gb_card() -> None:
    assert choose_resolution("1536", profile_for(A10G), auto_resolution=True) == "1024"


def test_1536_on_a_24gb_card_is_refused_with_the_way_out() -> None:
    with pytest.raises(ResolutionUnsupportedError) as caught:
        choose_resolution("1536", profile_for(A10G))
    text = str(caught.value)
    assert text.startswith("resolution 1536 does not fit on this GPU")
    assert ("needs about 40 GB of VRAM; the GPU reports 22.0 GiB of VRAM "
            "(24gb-class: highest resolution 1024)") in text
    # The library names its parameters; generate and batch submit their flags
    # (test_generate_cli, test_cloud_batch).
    assert "fix: use `resolution` 1024, or `auto_resolution` to step down to what fits" in text
    assert caught.value.exit_code == 2


def test_too_small_a_gpu_is_refused_even_with_auto() -> None:
    with pytest.raises(ResolutionUnsupportedError) as caught:
        choose_resolution("512", profile_for(RTX_4000_ADA_20), auto_resolution=True)
    assert str(caught.value).startswith("this GPU is too small for TRELLIS.2")
    assert "TRELLIS.2 needs about 24 GB at any resolution" in str(caught.value)


def test_unknown_resolution_names_the_valid_ones() -> None:
    with pytest.raises(ResolutionUnsupportedError) as caught:
        choose_resolution("2048", profile_for(H100_80), auto_resolution=True)
    assert "unknown resolution '2048'" in str(caught.value)
    assert "fix: use one of 512, 1024, 1536" in str(caught.value)
    with pytest.raises(ResolutionUnsupportedError):
        next_lower("1024_cascade")


MIB = 1024**2


@pytest.mark.parametrize(("card", "mib", "top"), [
    ("A10G", 23028, "1024"), ("L4", 23034, "1024"), ("A100 40GB", 40960, "1536"),
    ("L40S", 46068, "1536"), ("H100 80GB", 81559, "1536"),
])
def test_nvidia_smi_memory_totals_land_in_the_same_class(card: str, mib: int, top: str) -> None:
    """serve's preflight reads memory.total from nvidia-smi (MiB), generate reads vram_total from
    /system_stats (bytes, slightly less): both must put a card in the same class."""
    assert profile_for(mib * MIB).max_resolution == top, card


@pytest.mark.parametrize("vram", [A10G, L4, A100_40, L40S, H100_80, H200])
def test_every_profile_rests_on_the_measured_peaks(vram: int) -> None:
    """What each card may run is what the H200's measured per-job peaks say fits (a projection for
    every card but the H200): every allowed resolution's peak fits, the next one up does not, and
    low_vram is off only with headroom above the largest allowed peak."""
    profile = profile_for(vram)
    for resolution in profile.allowed_resolutions:
        assert MEASURED_PEAK_BYTES[resolution] <= vram, resolution
    above = RESOLUTIONS[len(profile.allowed_resolutions):]
    assert all(MEASURED_PEAK_BYTES[r] > vram for r in above), above
    largest = max(MEASURED_PEAK_BYTES[r] for r in profile.allowed_resolutions)
    assert profile.low_vram is (largest * UNPARKED_HEADROOM > vram)


def test_the_measured_peaks_grow_with_resolution_and_name_every_resolution() -> None:
    assert list(MEASURED_PEAK_BYTES) == list(RESOLUTIONS)
    assert sorted(MEASURED_PEAK_BYTES.values()) == list(MEASURED_PEAK_BYTES.values())


def test_lowering_the_top_cuts_the_allowed_resolutions_and_keeps_the_rest() -> None:
    h200 = profile_for(H200)
    at_1024 = lowered(h200, "1024")
    assert (at_1024.max_resolution, at_1024.allowed_resolutions) == ("1024", ("512", "1024"))
    assert (at_1024.lowered_from, at_1024.low_vram, at_1024.name) == ("1536", False, "80gb-class")
    assert lowered(h200, "512").allowed_resolutions == ("512",)
    # The card's own top is no lowering: the profile is the card's, nothing to explain.
    assert lowered(h200, "1536") == h200
    assert "lowered from 1536 by TRELLIS_BOX_MAX_RESOLUTION" in at_1024.describe()


def test_above_a_lowered_top_the_refusal_names_the_setting_not_the_gpu() -> None:
    at_1024 = lowered(profile_for(H200), "1024")
    assert choose_resolution("1536", at_1024, auto_resolution=True) == "1024"
    with pytest.raises(ResolutionUnsupportedError) as caught:
        choose_resolution("1536", at_1024)
    text = str(caught.value)
    assert text.startswith("resolution 1536 is above this server's limit of 1024")
    assert "TRELLIS_BOX_MAX_RESOLUTION=1024" in text
    assert ("fix: use `resolution` 1024, or `auto_resolution` to step down to it; for 1536, restart "
            "the server with TRELLIS_BOX_MAX_RESOLUTION=1536 (or unset)") in text
    assert caught.value.exit_code == 2
    # Above what the card itself holds, the GPU is what refuses.
    on_l4 = lowered(profile_for(L4), "512")
    with pytest.raises(ResolutionUnsupportedError) as caught:
        choose_resolution("1536", on_l4)
    assert str(caught.value).startswith("resolution 1536 does not fit on this GPU")
