"""Where backfills run: Ray sessions (`geneva.runners.ray`)."""
