"""De-identification of video and frame objects (PS3.15 Annex E): header profile, consistent
pseudonyms, audio removal, burned-in text and face masking, verification and report."""

from vid2dcm.deidentify.engine import DeidSettings, deidentify, deidentify_file
from vid2dcm.deidentify.profile import ProfileOptions
from vid2dcm.deidentify.report import DeidReport

__all__ = ["DeidReport", "DeidSettings", "ProfileOptions", "deidentify", "deidentify_file"]
