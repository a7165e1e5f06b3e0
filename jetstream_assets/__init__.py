"""Mozilla Jetstream experiment analysis as a Dagster asset graph."""
