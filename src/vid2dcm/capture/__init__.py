"""Live recording: sources, recorder, sessions, finalisation into DICOM, recovery."""
