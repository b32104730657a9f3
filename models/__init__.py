"""Pure model code: windows, interaction vectors and forecasters. No Kafka, no I/O."""
