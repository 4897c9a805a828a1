"""The domain: connections and their lifecycle, schedules, events, errors, provider profiles and OAuth's pure rules.

Nothing here imports boto3, httpx, Powertools or any other part of the package: it is the vocabulary every
other layer speaks, and it can be read and tested without AWS or a network.
"""
