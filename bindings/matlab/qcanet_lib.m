function qcanet_lib(action)
%QCANET_LIB  Load or unload the qcanet C library (called by the other qcanet_* functions).
%   qcanet_lib('load')    loads libqcanet.so with include/qcanet.h (once per session)
%   qcanet_lib('unload')  unloads it (models must have been freed)
%   The library is looked up in the folder given by the environment variable
%   QCANET_PREFIX (an installed prefix: PREFIX/lib, PREFIX/include), else in
%   ../../target/release and ../../include relative to this file.
if nargin < 1, action = 'load'; end
switch action
    case 'load'
        if libisloaded('qcanet'), return; end
        here = fileparts(mfilename('fullpath'));
        prefix = getenv('QCANET_PREFIX');
        if ~isempty(prefix)
            lib = fullfile(prefix, 'lib', 'libqcanet.so');
            hdr = fullfile(prefix, 'include', 'qcanet.h');
        else
            lib = fullfile(here, '..', '..', 'target', 'release', 'libqcanet.so');
            hdr = fullfile(here, '..', '..', 'include', 'qcanet.h');
        end
        if ~isfile(lib), error('qcanet:notFound', 'libqcanet.so not found at %s (set QCANET_PREFIX)', lib); end
        loadlibrary(lib, hdr, 'alias', 'qcanet');
        % ABI 2: voxel sizes, thresholds and volumes are double in QcaSegmentParams, and
        % QcaMetrics holds doubles and the detection arrays of ABI 2; another ABI would misread them
        abi = calllib('qcanet', 'qca_abi_version');
        if abi ~= 2
            unloadlibrary('qcanet');
            error('qcanet:abi', 'libqcanet has C ABI version %d; these wrappers need version 2', abi);
        end
    case 'unload'
        if libisloaded('qcanet'), unloadlibrary('qcanet'); end
    otherwise
        error('qcanet:usage', 'qcanet_lib(''load'') or qcanet_lib(''unload'')');
end
end
