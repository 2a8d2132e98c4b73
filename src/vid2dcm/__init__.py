"""vid2dcm: clinical video into conformant DICOM, copying the bitstream when DICOM accepts it."""

from __future__ import annotations

__version__ = "0.1.0"
