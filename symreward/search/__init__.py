"""Search engines: propose sparse sets of terms that minimise objective + complexity."""
