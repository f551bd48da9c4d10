"""Entry of `python -m appliance` and of the frozen `cortex` binary."""

from appliance.cli import main

if __name__ == "__main__":
    main()
