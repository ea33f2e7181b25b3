from stemscribe.cli import main
import sys
sys.exit(main())
