"""The pin file parses and carries what the product needs."""

from packaging.specifiers import SpecifierSet
from packaging.version import Version

from trellis_box import pins


def test_pins_name_every_upstream_commit_in_full() -> None:
    p = pins.load()
    for repo in (p.comfyui, *p.node_packs.values()):
        assert len(repo.commit) == 40 and int(repo.commit, 16) >= 0, repo


def test_transformers_pin_is_inside_the_range_dinov3_needs() -> None:
    p = pins.load()
    ranges = {r.name: SpecifierSet(r.range) for r in p.compat_packages}
    assert ranges["transformers"] == SpecifierSet(">=4.56,<5")
    # Every pinned package with a run-time range sits inside it (the Dockerfile's pin is this one).
    for name, allowed in ranges.items():
        assert Version(p.packages[name]) in allowed, name


def test_build_args_cover_every_pin() -> None:
    args = pins.load().build_args()
    assert args["COMFYUI_COMMIT"] == "a125cd84b054a57729b5eecab930ca9408719832"
    assert all(v for v in args.values())
