// docs/tools.md, executed as a reader follows it (see test/docs.test.ts and test/_guides.ts).
import { guideTest } from '../_guides.js'

guideTest('docs/tools.md')
