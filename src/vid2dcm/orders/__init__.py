"""Orders in, results out: HL7 v2 (MLLP) and FHIR orders bound to recordings, "images available"
notices back to the HIS, and routing rules.

A sibling of `delivery`: it imports `core` only, so the gateway (above both) can feed orders to the
staff page, recordings and jobs exactly like Modality Worklist entries.
"""
