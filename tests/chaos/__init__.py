"""The reliability and security suite (issue 9): kills, restarts, races, forged rows.

Each scenario is a black-box check through public commands and the database;
see ``docs/guarantees.md`` for what each proves and the figures of the long runs.
"""
