#!/bin/sh
# Run by cloud-init once the guest is configured (a plan's `scripts`): leaves a mark that the
# end-to-end test reads back through the guest agent.
echo "script ran on $(hostname)" > /var/tmp/script-ran
