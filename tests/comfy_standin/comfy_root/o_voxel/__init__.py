"""Stand-in for the o_voxel extension (visualbruno/TRELLIS.2's o-voxel): only the names the
pinned ComfyUI-Trellis2 imports, so serve's runtime-package check finds what the image has."""
