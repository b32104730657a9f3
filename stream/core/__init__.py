"""The worker's logic without Kafka or Faust: one implementation for the agents and for `salescast replay`.

Three steps, each a plain function of its inputs:

1. `ingest.Ingestor.ingest`: an input record's bytes -> a dead letter, or the
   updates it causes keyed by SKU and by user, plus a tick when its partition's
   event time enters a new bucket. The agents route the updates through Kafka
   (repartitioning by SKU and by user, in the wire format of `state`); replay
   applies them in memory.
2. `state.apply_sku_update`, then `close.close_buckets`: a SKU's window absorbs
   an update; when the low watermark (`watermarks`) passes the end of a bucket,
   every live SKU gets a forecast.
3. `state.apply_user_update`: a user's interaction vector absorbs an update.

`names` holds the names state is stored under, `contract` the input and output
records, `settings` the configuration, and `local` the whole pipeline in one
process (replay, evaluation, training).
"""
