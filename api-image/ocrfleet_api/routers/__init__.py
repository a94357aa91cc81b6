"""One APIRouter per resource: documents, batches, stats, health."""
