function [labels, n] = qcanet_segment(vol, voxel_size, varargin)
%QCANET_SEGMENT  Segment nuclei in a 3-D volume with qcanet.
%   [labels, n] = qcanet_segment(vol, [vz vy vx])
%   [labels, n] = qcanet_segment(vol, [vz vy vx], 'nsn', 'nsn.onnx', 'ndn', 'ndn.onnx', ...
%                                 'device', 'cpu', 'fg_threshold', 0.6, 'min_volume', 500)
%   vol is [X Y Z] (uint8, uint16 or single/double); voxel_size is z, y, x in micrometres.
%   labels is uint32 [X Y Z] (0 = background, 1..n = nuclei). Without 'nsn', the model
%   compiled into the library is used. Voxel sizes, thresholds and the minimum volume
%   (um^3) reach the library as the doubles given here (C ABI 2); -1 means the model's.
%   'device' is auto, cpu or cuda (the library's own names, qca_option_value).
p = inputParser;
p.addParameter('nsn', ''); p.addParameter('ndn', ''); p.addParameter('device', 'cpu');
p.addParameter('threads', 0); p.addParameter('fg_threshold', -1); p.addParameter('centre_threshold', -1);
p.addParameter('min_volume', -1);
p.parse(varargin{:});
o = p.Results;
m = qcanet_model(o);
cleanup = onCleanup(@() calllib('qcanet', 'qca_model_free', m));
prm = libstruct('QcaSegmentParams');
qcanet_check(calllib('qcanet', 'qca_segment_params_default', prm, calllib('qcanet', 'qca_struct_size', 'QcaSegmentParams')), 'parameters');
if numel(voxel_size) ~= 3, error('qcanet:voxelSize', 'voxel_size must be [vz vy vx] in micrometres'); end
prm.voxel_size = double(voxel_size(:)');
prm.fg_threshold = double(o.fg_threshold); prm.centre_threshold = double(o.centre_threshold);
prm.min_volume_um3 = double(o.min_volume);
dims = qcanet_dims(vol);
labels = zeros(size(vol), 'uint32');
lab = libpointer('uint32Ptr', labels);
cnt = libpointer('uint32Ptr', uint32(0));
switch class(vol)
    case 'uint8', fn = 'qca_segment_u8';
    case 'uint16', fn = 'qca_segment_u16';
    otherwise, fn = 'qca_segment_f32'; vol = single(vol);
end
qcanet_check(calllib('qcanet', fn, m, vol, dims, prm, lab, cnt), 'segmentation');
labels = reshape(lab.Value, size(vol));
n = double(cnt.Value);
end
