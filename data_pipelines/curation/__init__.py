"""Movie Gen's per-item curation stages as pure functions over numpy frames: scene cuts, clip
cutting and fps resampling, motion filter, bucket choice, resize + crop, perceptual hashes,
cluster balancing, and `curate.curate_media`, which runs them in order on one decoded item."""
