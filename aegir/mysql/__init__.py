"""The runbook's MySQL/MariaDB area: WAL (binary log) facts, the checkpoint program it ships, restore."""
