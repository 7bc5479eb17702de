"""The `readseq` command line."""
