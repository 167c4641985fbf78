"""A project on disk: finding it, its `seqrun.yaml`, its lead files, and assembling what commands run."""
