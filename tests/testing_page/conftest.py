"""The modules here are the examples of the Testing page (docs/testing.md), not part of the
main suite: they are written for pytest-asyncio or for anyio's plugin with its own settings,
and tests/test_testing_page.py runs each one in a child pytest with the configuration the
page shows. The main suite (anyio's plugin in auto mode, ``-p no:asyncio``) must not collect
them.
"""

collect_ignore_glob = ["test_*.py"]
