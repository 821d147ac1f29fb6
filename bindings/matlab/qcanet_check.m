function qcanet_check(status, what)
%QCANET_CHECK  Raise a MATLAB error with the library's message when a call failed.
if status ~= 0
    name = calllib('qcanet', 'qca_status_str', status);
    msg = calllib('qcanet', 'qca_last_error');
    error(['qcanet:' name], '%s failed: %s (%s)', what, msg, name);
end
end
