"""The verification pass: read the output like an attacker would and fail if anything of the
patient is still there (PS3.15 E.3.1: compliance is judged by the result, not the method).

Every sampled output frame is read by the same OCR that found the text in the source; the
de-identification fails if any original identifier (name parts, IDs, accession, dates in the
usual formats) or any text line masked in the source is readable, or, with Clean Recognizable
Visual Features, if the face detector still finds a face.
"""

from __future__ import annotations

from pathlib import Path

from vid2dcm.deidentify.faces import detect_faces
from vid2dcm.deidentify.pixels import read_text, sample_frames
from vid2dcm.deidentify.profile import normalize
from vid2dcm.deidentify.report import Verification

MIN_TOKEN = 4
"""Source text shorter than this is not matched (OCR noise like 'LL' or '17' would fail
every output)."""


def verify_media(path: Path, every_s: float, identifiers: dict[str, tuple[str, ...]],
                 masked_text: tuple[str, ...], check_text: bool, check_faces: bool,
                 rate: float) -> Verification:
    """identifiers: kind -> normalised tokens (e.g. 'PatientName' -> ('DOE', 'JANE'))."""
    wanted = {token: kind for kind, tokens in identifiers.items() for token in tokens}
    for line in masked_text:
        for word in line.split():
            token = normalize(word)
            if len(token) >= MIN_TOKEN and not token.isdigit():
                wanted.setdefault(token, "text masked in the source")
    readable: set[str] = set()
    faces = frames = 0
    for sample in sample_frames(path, every_s, has_timestamps=True, rate=rate):
        frames += 1
        if check_text:
            seen = normalize(" ".join(line.text for line in read_text(sample.rgb, 0.0)))
            readable.update(kind for token, kind in wanted.items() if token in seen)
        if check_faces:
            faces += len(detect_faces(sample.rgb))
    passed = not readable and faces == 0
    note = "" if passed else "identifying content is still readable in the output"
    return Verification(True, passed, frames, tuple(sorted(readable)), faces, note)
