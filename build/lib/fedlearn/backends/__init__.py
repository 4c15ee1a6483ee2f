"""Optional worker backends. Each imports its heavy dependency only when used."""
