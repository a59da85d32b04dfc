"""The campaign and job side of queue control (filled by the queue-control work)."""
