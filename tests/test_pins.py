"""The pin file parses and carries what the product needs."""

from trellis_box import pins


def test_pins_name_every_upstream_commit_in_full() -> None:
    p = pins.load()
    for repo in (p.comfyui, *p.node_packs.values()):
        assert len(repo.commit) == 40 and int(repo.commit, 16) >= 0, repo


def test_transformers_pin_is_inside_the_range_dinov3_needs() -> None:
    major, minor, *_ = (int(x) for x in pins.load().packages["transformers"].split("."))
    assert (major, minor) >= (4, 56) and major < 5


def test_build_args_cover_every_pin() -> None:
    args = pins.load().build_args()
    assert args["COMFYUI_COMMIT"] == "a125cd84b054a57729b5eecab930ca9408719832"
    assert all(v for v in args.values())
