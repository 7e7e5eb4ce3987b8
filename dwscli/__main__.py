"""``python -m dwscli`` runs the ``dws`` command line."""

from dwscli.cli.app import main

if __name__ == "__main__":
    main()
