from core.train import main

raise SystemExit(main())
