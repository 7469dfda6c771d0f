"""Jobs that compose the stages of ``getok_data`` (which know nothing of where they run)."""
