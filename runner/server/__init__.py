"""The daemon's HTTP side (`seqrun serve`): webhook endpoints and the dashboard."""
