"""The unified data layer: settings, database, ORM models, migrations, audit log, jobs, errors.

`core` imports no other package of revloop.
"""
