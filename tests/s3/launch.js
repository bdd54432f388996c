// Starts @20minutes/s3rver (which ships no bin script) with s3rver's own command line.
require('@20minutes/s3rver/lib/cli.js').parseAsync(process.argv);
