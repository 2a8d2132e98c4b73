"""The release number, in the one place every layer may read it (SoftwareVersions, Implementation
Version Name, Derivation Description) without importing the package facade."""

__version__ = "0.1.0"
