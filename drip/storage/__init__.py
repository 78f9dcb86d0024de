"""The database: engine, tables, plain-SQL hot paths, keys, leads and migrations."""
