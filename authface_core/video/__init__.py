"""Video restoration: decode/encode with PyAV (``media``), face tracks across frames
(``tracking``), temporal smoothing of each track's alignment (``smoothing``), the frame loop
that ties them together with one noise per track (``restore``, keys from
``authface_core.noise_keys``) and the command line's video route (``command``).

Importing this package imports numpy only; PyAV loads when a video is opened, torch when a
clip is restored.
"""
