from port.cli import main

raise SystemExit(main())
