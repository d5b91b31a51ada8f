"""CDK entry point (cdk.json: ``python3 app.py``): run from the repository root."""

from cdk_app.app import main

if __name__ == "__main__":
    main()
