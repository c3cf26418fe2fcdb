"""Detection logic: plain functions over plain documents, shared by the streaming
jobs (jobs/streaming/) and the batch evaluation. No engine code here."""
