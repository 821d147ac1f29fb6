function r = qcanet_segment_file(input, output, varargin)
%QCANET_SEGMENT_FILE  Segment a stack on disk into labels on disk, block by block.
%   r = qcanet_segment_file('big.tif', 'big_labels.tif')
%   r = qcanet_segment_file('embryo.ome.zarr', 'labels.ome.zarr', 'blocks', [153 256 256], 'measure', true)
%   r = qcanet_segment_file('embryo.ome.zarr', '', 'labels_name', 'qcanet')   % into the input's labels/
%   The input is a TIFF, BigTIFF, OME-TIFF or OME-Zarr image (every frame of a time series); it
%   is read block by block, so it may be far larger than memory (qca_segment_file, the code
%   behind `qcanet segment`). The labels go to a new TIFF (BigTIFF when large; a new OME-Zarr
%   for an OME-Zarr input), or into the OME-Zarr input's labels/<labels_name>. The input is
%   never written over. Options: 'voxel_size' [vz vy vx] um (default: the file's),
%   'channel' (1-based), 'blocks' ('auto', 'whole' or a core [z y x] in voxels), 'measure'
%   (also NAME.csv beside the labels; beside the input for labels into it), 'nsn', 'ndn', 'device', 'fg_threshold',
%   'centre_threshold', 'min_volume' as qcanet_segment.
%   r.nuclei is the nuclei per frame; r.frames, r.blocks, r.network_s, r.post_s, r.wall_s.
p = inputParser;
p.addParameter('nsn', ''); p.addParameter('ndn', ''); p.addParameter('device', 'cpu');
p.addParameter('threads', 0); p.addParameter('fg_threshold', -1); p.addParameter('centre_threshold', -1);
p.addParameter('min_volume', -1); p.addParameter('voxel_size', []); p.addParameter('channel', 1);
p.addParameter('blocks', 'auto'); p.addParameter('measure', false); p.addParameter('labels_name', '');
p.parse(varargin{:});
o = p.Results;
if isempty(output) == isempty(o.labels_name)
    error('qcanet:usage', 'give either an output file or ''labels_name'' (labels into an OME-Zarr input)');
end
m = qcanet_model(o);
cleanup = onCleanup(@() calllib('qcanet', 'qca_model_free', m));
prm = libstruct('QcaSegmentParams');
qcanet_check(calllib('qcanet', 'qca_segment_params_default', prm, calllib('qcanet', 'qca_struct_size', 'QcaSegmentParams')), 'parameters');
if ~isempty(o.voxel_size)
    if numel(o.voxel_size) ~= 3, error('qcanet:voxelSize', 'voxel_size must be [vz vy vx] in micrometres'); end
    prm.voxel_size = double(o.voxel_size(:)');
end
prm.fg_threshold = double(o.fg_threshold); prm.centre_threshold = double(o.centre_threshold);
prm.min_volume_um3 = double(o.min_volume);
blk = libstruct('QcaBlockOptions');
qcanet_check(calllib('qcanet', 'qca_block_options_default', blk, calllib('qcanet', 'qca_struct_size', 'QcaBlockOptions')), 'block options');
flags = uint32(0);
if ischar(o.blocks) || isstring(o.blocks)
    switch char(o.blocks)
        case 'auto'
        case 'whole', flags = bitor(flags, uint32(1));        % QCA_FILE_WHOLE
        otherwise, error('qcanet:usage', 'blocks is ''auto'', ''whole'' or a core [z y x]');
    end
else
    if numel(o.blocks) ~= 3, error('qcanet:usage', 'blocks is ''auto'', ''whole'' or a core [z y x]'); end
    blk.core = uint64(o.blocks(:)');
end
if o.measure, flags = bitor(flags, uint32(2)); end          % QCA_FILE_MEASURE
if o.channel < 1, error('qcanet:usage', 'channels are numbered from 1'); end
capacity = 65536;
nuclei = libpointer('uint32Ptr', zeros(1, capacity, 'uint32'));
rep = libstruct('QcaFileReport');
rep.struct_size = uint32(calllib('qcanet', 'qca_struct_size', 'QcaFileReport'));
if isempty(output), output = []; end
name = o.labels_name; if isempty(name), name = []; end
qcanet_check(calllib('qcanet', 'qca_segment_file', m, input, output, name, uint32(o.channel - 1), flags, ...
                     prm, blk, nuclei, capacity, rep), 'segmentation');
frames = double(rep.frames);
counts = double(nuclei.Value);
r = struct('nuclei', counts(1:min(frames, capacity)), 'frames', frames, 'blocks', double(rep.blocks), ...
           'network_s', rep.network_s, 'post_s', rep.post_s, 'wall_s', rep.wall_s);
end
