"""Training of MedFusion's networks, outside the inference package Slicer loads (MedFusionLib).

``training`` holds the shared machinery (data, sampling, loop, checkpoints, export into MedFusionLib/weights);
one module per network, named as its registry entry (``mfenet``, ``edpsn``, ``fusioncinn``), holds its loss,
batches, validation and recipes. scripts/train.py is the command line over it.
"""
