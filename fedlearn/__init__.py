"""fedlearn."""
