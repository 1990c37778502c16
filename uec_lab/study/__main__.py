import sys

from uec_lab.study.run import main

sys.exit(main())
