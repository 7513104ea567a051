# The call-helper stack now lives in t/lib/Test/VoiceCall.pm; this file
# stays so that
#
#   require "$FindBin::Bin/lib/voice-call.pl";
#   voice_setup();          # before run_tests()
#
# keeps working: it imports the same functions (voice_setup, twilio_call,
# twilio_calls, fake_pos, fake_events, fake_wait, oa_msgs, oa_sent,
# tw_recv, call_ended_lines, ...) into package main, with
# $main::VoiceDir and %main::Fake as before.

package main;

use strict;
use warnings;
use FindBin ();
use lib "$FindBin::Bin/lib";
use Test::VoiceCall;

our ($VoiceDir, %Fake);
*main::VoiceDir = \$Test::VoiceCall::VoiceDir;
*main::Fake = \%Test::VoiceCall::Fake;

1;
