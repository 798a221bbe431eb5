"""``chatq eval``: run a question set through the real pipeline over HTTP and score the answers.

- ``questions``: the eval file (YAML or JSON) and its validation.
- ``scoring``: an answer against its expected patterns, plus an optional semantic similarity.
- ``runner``: the questions as jobs (earlier turns first, in one fresh session per item).
- ``report``: accuracy per kind, language and route, runs side by side, the JSON record.
- ``command``: the command line, on a running chatq or on a private stack of its own.
"""
