"""Warehouse engines behind one seam (base.py): DuckDB embedded, Redshift in production."""
