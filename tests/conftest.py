"""Suite-wide fixtures. Each lives in a module of tests/support; they are loaded here."""

pytest_plugins = [
    "tests.support.micropython",
    "tests.support.paths",
    "tests.support.mosquitto",
    "tests.support.databases",
    "tests.support.cloud",
]
