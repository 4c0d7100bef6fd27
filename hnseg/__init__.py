"""hnseg: head-and-neck radiotherapy target segmentation (HNTS-MRG, SegRap, NPC) on nnU-Net v2."""

__version__ = "0.1.0"
