"""Operator plumbing shared by every part: metrics, logging, error reports, output files."""
