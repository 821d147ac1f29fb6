function t = qcanet_measure(labels, image, voxel_size)
%QCANET_MEASURE  Per-nucleus volume, centroid and intensity, as a table.
%   t = qcanet_measure(labels, image, [vz vy vx])   image may be [] (no intensities).
%   Centroids are returned in MATLAB's (x, y, z) order, 1-based voxels and micrometres.
qcanet_lib('load');
if nargin < 3, voxel_size = [1 1 1]; end
if isempty(image), img = []; else, img = single(image); end
h = libpointer('voidPtrPtr', libpointer);
qcanet_check(calllib('qcanet', 'qca_measure', uint32(labels), img, qcanet_dims(labels), double(voxel_size(:)'), h), 'measurement');
ms = h.Value;
cleanup = onCleanup(@() calllib('qcanet', 'qca_measurements_free', ms));
n = calllib('qcanet', 'qca_measurements_count', ms);
label = zeros(n, 1); volume_um3 = zeros(n, 1); centroid = zeros(n, 3); centroid_um = zeros(n, 3);
mean_intensity = zeros(n, 1);
k = libstruct('QcaNucleus');
for i = 1:n
    qcanet_check(calllib('qcanet', 'qca_measurements_get', ms, i - 1, k), 'reading a nucleus');
    s = struct(k);
    label(i) = s.label; volume_um3(i) = s.volume_um3;
    centroid(i, :) = fliplr(double(s.centroid)) + 1;   % (z,y,x) 0-based -> (x,y,z) 1-based
    centroid_um(i, :) = fliplr(double(s.centroid_um));
    mean_intensity(i) = s.mean_intensity;
end
t = table(label, volume_um3, centroid, centroid_um, mean_intensity);
end
